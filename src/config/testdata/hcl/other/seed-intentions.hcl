# Verbatim from seed 000 (config-entry.hcl), lines 717-738.
Kind = "service-intentions"
Name = "api"
Sources = [
  {
    Name   = "web"
    Action = "allow"
    Permissions = [
      {
        Action = "allow"
        HTTP {
          PathPrefix = "/api/v1/"
        }
      },
      {
        Action = "deny"
        HTTP {
          PathPrefix = "/admin/"
        }
      }
    ]
  }
]
