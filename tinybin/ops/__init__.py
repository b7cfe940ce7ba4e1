"""One file per op family; each op is a forward/backward pair plus a thin Function wrapper."""
