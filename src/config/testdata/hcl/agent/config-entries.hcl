# Config entries written at bootstrap: one `bootstrap` block per entry.
config_entries {
  bootstrap {
    Kind = "proxy-defaults"
    Name = "global"
    Config { protocol = "http" }
  }
  bootstrap {
    Kind = "service-resolver"
    Name = "api"
    Subsets = {
      "v1" = {
        Filter = "Service.Meta.version == v1"
      }
    }
  }
}
