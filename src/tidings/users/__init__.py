"""users service: users, contact data, preferences, passwords."""
