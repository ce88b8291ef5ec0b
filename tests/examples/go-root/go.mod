module example.com/go-root

go 1.19
