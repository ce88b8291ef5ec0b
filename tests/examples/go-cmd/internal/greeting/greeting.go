// Package greeting says who answers.
package greeting

// Text is the body of every response.
func Text() string { return "hello from go-cmd" }
