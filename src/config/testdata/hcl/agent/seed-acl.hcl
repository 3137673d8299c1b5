# Verbatim from seed 000 (acl.hcl), lines 825-831.
# 1. 启用 ACL(修改配置)
# acl.hcl
acl {
  enabled = true
  default_policy = "deny"
  enable_token_persistence = true
}
