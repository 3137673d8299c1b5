# Verbatim from seed 000 (service-router.hcl), lines 750-780.
Kind = "service-router"
Name = "api"
Routes = [
  {
    Match {
      HTTP {
        Header = [
          {
            Name  = "x-version"
            Exact = "v2"
          }
        ]
      }
    }
    Destination {
      Service = "api"
      ServiceSubset = "v2"
    }
  },
  {
    Match {
      HTTP {
        PathPrefix = "/beta/"
      }
    }
    Destination {
      Service = "api"
      ServiceSubset = "canary"
    }
  }
]
