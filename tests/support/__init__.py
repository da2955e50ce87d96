"""Test support shared by every test layer: throwaway real servers, helpers."""
