"""lethe: data lifecycle governance."""
