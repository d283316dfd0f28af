variable "x" {
  type    = number
  default = "twelve"
}
