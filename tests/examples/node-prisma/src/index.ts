import express from "express";
import { PrismaClient } from "@prisma/client";

const prisma = new PrismaClient();
const app = express();
app.get("/", async (_request, response) => {
  response.send(`hello from node-prisma (${await prisma.greeting.count()} greetings)`);
});
app.listen(Number(process.env.PORT ?? 3000), "0.0.0.0");
