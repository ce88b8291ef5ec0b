import { GeistMono } from "geist/font/mono";
import { GeistSans } from "geist/font/sans";

export const geistSans = GeistSans;
export const geistMono = GeistMono;
