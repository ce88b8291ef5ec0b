# A tiny HTTP server on the standard library only (TCPServer), listening on $PORT.
require "socket"

port = Integer(ENV.fetch("PORT", "8080"))
server = TCPServer.new("0.0.0.0", port)
$stdout.sync = true
puts "ruby-plain listening on #{port}"

trap("TERM") { exit }

loop do
  client = server.accept
  Thread.new(client) do |socket|
    begin
      request_line = socket.gets
      while (line = socket.gets) && line != "\r\n"; end
      body = "hello from ruby-plain\n"
      status = request_line.to_s.start_with?("GET / ") ? "200 OK" : "404 Not Found"
      socket.write("HTTP/1.1 #{status}\r\nContent-Type: text/plain\r\n" \
                   "Content-Length: #{body.bytesize}\r\nConnection: close\r\n\r\n#{body}")
    rescue StandardError => e
      warn "ruby-plain: #{e.message}"
    ensure
      socket.close
    end
  end
end
