"""The HTTP API (`lethe serve`): parses, authorises, calls the library, answers JSON."""
