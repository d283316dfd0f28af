variable "dir" {
  type        = string
  default     = "/tmp"
  description = "Where files go."
}

variable "ports" {
  type    = list(number)
  default = [22400]
}

variable "token" {
  type      = string
  default   = "t"
  sensitive = true
}

variable "from_env" {
  default = env("ROTPLAN_PLANS_TEST_ENV")
}

locals {
  path = "${var.dir}/a.crt"
}

vault {
  address = "https://127.0.0.1:${var.ports[0]}"
  auth {
    method = "cert"
  }
}

issue "a" {
  mount       = "pki"
  role        = "r"
  common_name = "x"
}

write "a" {
  depends_on = [issue.a]
  path       = local.path
  content    = issue.a.certificate
}
