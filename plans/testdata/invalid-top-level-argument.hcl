address = "https://127.0.0.1:8200"
