"""Wuye (物业): the regulator's platform for property management."""
