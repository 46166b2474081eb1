"""Curation: ordered steps applied to a generation's synthetic candidates before the policy."""
