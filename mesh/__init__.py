"""The service mesh of Cinema, from one source of truth.

The per-service traffic policy (timeouts, retries and what they retry on, connection-pool limits,
outlier detection) and the edge policy (public paths, rate limit) live in the Helm chart's values
(`helm/cinema/values.yaml`). The chart renders them as Istio resources; `mesh.envoy` renders the
local Envoy configuration from the same values (`mesh.policy` reads them).
"""
