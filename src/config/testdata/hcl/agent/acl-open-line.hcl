# A block whose first attribute sits on the line of its "{": HCL 1 (and so Consul) reads
# it, HCL 2 refuses it ("invalid block body").
acl { enabled = true
  default_policy = "deny"
  down_policy    = "extend-cache"
  enable_token_persistence = true
  tokens { agent = "b1gs33cr3t"
    default = "d3f4ult" }
}
datacenter = "dc1"
