"""Workers: the policy's schedules and pending requests, shared through leases."""
