"""Warehouse export: a score date's rows copied into a relational warehouse over JDBC."""
