"""The residential maintenance fund (住宅专项维修资金): one account per unit, a double-entry
ledger that cannot drift, uses decided by owners or approved as emergencies, every payment
apportioned exactly among the units that benefit, and every use published."""
