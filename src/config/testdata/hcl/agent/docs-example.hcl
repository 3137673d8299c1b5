# Shaped like the agent configuration example in Consul's documentation.
datacenter = "east-aws"
data_dir = "/opt/consul"
log_level = "INFO"
node_name = "foobar"
server = true
leave_on_terminate = true
watches = [
  {
    type = "checks"
    handler_type = "script"
    args = ["/usr/bin/health-check-handler.sh"]
  }
]
watches = [{ type = "key", key = "config/flag", args = ["/usr/bin/on-flag.sh"] }]
telemetry {
  statsite_address = "127.0.0.1:2180"
  prefix_filter = ["+consul.raft.apply", "-consul.http"]
}
