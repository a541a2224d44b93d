"""The registry of beneficiaries (persons, insured members, dependants, coverage, Amen households) and providers."""
