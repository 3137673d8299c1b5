# Verbatim from seed 000 (web-policy.hcl), lines 855-881.
# Web 服务策略
service "web" {
  policy = "write"
}

# Web Sidecar 策略
service "web-sidecar-proxy" {
  policy = "write"
}

# 读取其他服务(用于服务发现)
service_prefix "" {
  policy = "read"
}

# 读取节点信息
node_prefix "" {
  policy = "read"
}

# 读取 KV 配置
key_prefix "config/web/" {
  policy = "read"
}

# Intention 读取(Connect)
intentions = "read"
