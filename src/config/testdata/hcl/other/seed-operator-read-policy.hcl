# Verbatim from seed 000 (operator-read-policy.hcl), lines 903-922.
# 只读所有服务
service_prefix "" {
  policy = "read"
}

# 只读所有节点
node_prefix "" {
  policy = "read"
}

# 只读 KV
key_prefix "" {
  policy = "read"
}

# 只读 ACL
acl = "read"

# 只读 Operator 信息
operator = "read"
