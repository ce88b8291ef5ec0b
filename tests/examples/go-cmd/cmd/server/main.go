package main

import (
	"fmt"
	"log"
	"net/http"
	"os"

	"example.com/go-cmd/internal/greeting"
)

func main() {
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, greeting.Text())
	})
	log.Printf("go-cmd listening on %s", port)
	log.Fatal(http.ListenAndServe(":"+port, nil))
}
