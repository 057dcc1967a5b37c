"""Alert rules as code: typed definitions (model), the rules (rules), Kubernetes/Prometheus
documents (manifests). The `AlertRules` component lives in `components/alert_rules.py`."""
