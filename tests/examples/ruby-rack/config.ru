# A Rack app: puma serves it (the Gemfile has puma).
run lambda { |_env| [200, { "content-type" => "text/plain" }, ["hello from ruby-rack\n"]] }
