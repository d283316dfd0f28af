vault {}

vault {}
