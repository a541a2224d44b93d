"""Smart cards: issuance with keys and certificates, lifecycle, distribution through post offices, SMS look-up."""
