"""Managers: the TaskManager (the seed's API) and the EcologyManager (labourer health)."""
