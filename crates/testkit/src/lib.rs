//! pgwarden-testkit: throwaway PostgreSQL clusters for tests (being built).
