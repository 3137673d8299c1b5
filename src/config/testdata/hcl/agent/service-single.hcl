# One service with one `checks` block: Consul keeps `checks` a list of one.
service {
  name = "web"
  port = 80
  meta {
    version = "1.2"
    "team" = "edge"
  }
  checks {
    id = "web-ttl"
    ttl = "10s"
    notes = <<-EOT
      Fails when the web tier stops reporting.
      See the runbook.
      EOT
  }
  check { id = "web-ttl-2", ttl = "20s" }
}
check {
  id    = "node-ttl"
  name  = "node ttl"
  ttl   = "60s"
  notes = <<EOF
first line
  second line
EOF
}
