// Several services in one file, as Consul's docs write them: the `services` block
// repeated. Each check block of a service adds to its `checks` list.
services {
  id   = "red0"
  name = "redis"
  tags = [
    "primary"
  ]
  address = ""
  port    = 6000
  checks {
    name     = "redis0 ttl"
    ttl      = "30s"
  }
}
services {
  id = "red1"
  name = "redis"
  tags = ["delayed", "secondary",]
  port = 7000
  checks = [
    { id = "red1-a", ttl = "30s" },
    { id = "red1-b", ttl = "60s" },
  ]
  checks {
    id  = "red1-c"
    ttl = "90s"
  }
}
services { name = "cache", port = 11211 }
