"""The admin web pages: Super Admin and Customer administration (guide 2.2, 2.3, 5, 6, 8)."""
