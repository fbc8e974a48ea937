"""Owners' voting (业主共同决定, Civil Code Art. 278): double majorities of area and headcount on
a public, hash-chained ballot log that anyone can re-tally."""
