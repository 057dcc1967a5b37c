"""Alert rules as code: typed definitions (model), the rules (rules), Kubernetes/Prometheus
documents (manifests), and the `AlertRules` component that declares them (alert_rules)."""
