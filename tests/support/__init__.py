"""Test support: real-transport fakes (Spark simulator fixtures, Bot API fake) and databases."""
