"""Test harness: throwaway databases, a router served on a loopback port, routing files."""
