# Verbatim from seed 000 (service resolver), lines 799-811.
Kind = "service-resolver"
Name = "api"
Subsets = {
  "v1" = {
    Filter = "Service.Meta.version == v1"
  }
  "v2" = {
    Filter = "Service.Meta.version == v2"
  }
  "canary" = {
    Filter = "Service.Tags contains canary"
  }
}
