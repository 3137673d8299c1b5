# Quoted keys throughout and services as a list literal, as generated HCL often is.
"services" = [
  {
    "name" = "api"
    "port" = 9090
    "enable_tag_override" = true
    "checks" = [
      {
        "id" = "api-http"
        "http" = "http://127.0.0.1:9090/health"
        "interval" = "10s"
        "header" = { "X-Probe" = ["consul"] }
      }
    ]
  },
  {
    "name" = "worker", "port" = 9091,
  },
]
"node_meta" = { "zone" = "a" }
