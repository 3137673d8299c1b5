# Verbatim from seed 000 (server1.hcl), lines 35-73.
# 数据中心名称
datacenter = "dc1"

# 数据目录
data_dir = "/opt/consul/data"

# 日志级别
log_level = "INFO"

# Server 模式
server = true

# 期望 Server 数量(用于自动 Bootstrap)
bootstrap_expect = 3

# 绑定地址(内网 IP)
bind_addr = "10.0.1.10"

# 客户端访问地址
client_addr = "0.0.0.0"

# 自动加入集群(通过 DNS/云元数据)
retry_join = ["10.0.1.10", "10.0.1.11", "10.0.1.12"]

# 启用 UI
ui_config {
  enabled = true
}

# 性能调优
performance {
  raft_multiplier = 1
}

# 监控指标
telemetry {
  prometheus_retention_time = "24h"
  disable_hostname = true
}
