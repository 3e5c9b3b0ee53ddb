"""Enrichment stage: vectorised enrichers (GeoIP/ASN, internal networks, domains).

Each enricher adds ECS columns to a whole polars batch. Expensive lookups run
once per distinct value in the batch (with a bounded cache across batches) and
are joined back, so cost follows the number of unique values, not rows.
"""
