"""Example planners for planforge: a third party's distribution, found through entry points."""
