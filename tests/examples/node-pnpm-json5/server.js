const http = require("http");

const port = Number(process.env.PORT || 8080);
http
  .createServer((request, response) => {
    response.writeHead(200, { "Content-Type": "text/plain" });
    response.end("hello from node-pnpm-json5\n");
  })
  .listen(port, "0.0.0.0", () => console.log("node-pnpm-json5 listening on " + port));
