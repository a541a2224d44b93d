"""Claims: the fund's rules, adjudication, prior approvals, payment runs, tax certificates."""
