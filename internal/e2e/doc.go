// Package e2e holds the end-to-end tests: the real supervisor binary, real
// actor processes (built with -race), a real embedded JetStream, real
// SIGKILLs. It has no non-test code.
package e2e
