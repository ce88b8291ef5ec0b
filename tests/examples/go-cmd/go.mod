module example.com/go-cmd

go 1.19
