const express = require("express");

const app = express();
app.get("/", (req, res) => {
  res.send(`Hello from pnpm ${process.env.npm_config_user_agent?.split(" ")[0] ?? ""}`.trim());
});
app.listen(Number(process.env.PORT ?? 3000));
