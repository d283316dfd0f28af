# exit: 1
# want: 22:1: Cannot run issue.admin
variable "dir" {
  type = string
}

variable "vault_addr" {
  type = string
}

vault {
  address = var.vault_addr
  token   = "hvs.e2e-token-that-must-never-be-printed"
}

# Independent of Vault: were it run first, it would touch the directory.
write "first" {
  path    = "${var.dir}/existing.txt"
  content = "replaced\n"
}

issue "admin" {
  mount       = "pki-prod"
  role        = "admin-client"
  common_name = "vault-admin-prod"
}

write "admin_crt" {
  path    = "${var.dir}/admin.crt"
  content = issue.admin.certificate
}
