/*
 * Every way of writing things that HCL 1 allows, mixed.
 */
"datacenter" = "dc2"
node_name    = "mixed-node" // trailing comment
log_level = "WARN", enable_script_checks = false
node_meta { "rack" = "r1", env = "prod"
  "instance-type" = "m5.large" }
ports { http = 8501 dns = 8601
  grpc = -1 }
addresses {
  http = "127.0.0.1"
}
retry_join = ["10.0.1.20"]
retry_join = ["10.0.1.21", "10.0.1.22"]  # repeated lists add up, as in Consul
recursors = [
  "10.0.0.2", # a data-only address
]
dns_config { allow_stale = true
  max_stale = "87600h"
  node_ttl = "30s" }
telemetry { disable_hostname = true, prometheus_retention_time = "1h" }
limits { http_max_conns_per_client = 0x100 }
performance = { raft_multiplier = 5 }
ui_config { enabled = true }
