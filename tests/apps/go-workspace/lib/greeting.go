package lib

// Greeting is what the web command answers.
func Greeting() string { return "Hello from a Go workspace!" }
