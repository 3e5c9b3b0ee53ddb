"""Message buses between collectors and processors."""
