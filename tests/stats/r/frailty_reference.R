# Reference values for tests/stats/test_frailty*.py: Gaussian frailty Cox models.
# Run from the repository root:  Rscript tests/stats/r/frailty_reference.R
suppressMessages({library(survival); library(jsonlite)})
rd <- function(name) read.csv(file.path("tests/stats/data", paste0(name, ".csv")))
lung <- rd("lung"); veteran <- rd("veteran"); colon <- rd("colon")
out <- list()
fr <- function(fit) {
  th <- fit$history[[1]]$theta
  nf <- length(coef(fit))
  list(coef = unname(coef(fit)), se = unname(sqrt(diag(fit$var))),
       se2 = unname(sqrt(diag(fit$var2))), theta = th, loglik = fit$loglik,
       frail = unname(fit$frail), n = fit$n, nevent = fit$nevent,
       concordance = unname(fit$concordance["concordance"]))
}
tight <- coxph.control(eps = 1e-12, outer.max = 60, iter.max = 50, toler.chol = 1e-15)
lungc <- na.omit(lung[, c("time", "status", "age", "sex", "inst", "ph.ecog")])
# 18 institutions -> R's sparse computation
out$lung_default <- fr(coxph(Surv(time, status) ~ age + sex + frailty(inst, distribution = "gaussian"), data = lungc))
out$lung_tight <- fr(coxph(Surv(time, status) ~ age + sex + frailty(inst, distribution = "gaussian"), data = lungc, control = tight))
# 4 cell types as "centers" -> not sparse
out$veteran_default <- fr(coxph(Surv(time, status) ~ karno + trt + frailty(celltype, distribution = "gaussian"), data = veteran))
out$veteran_tight <- fr(coxph(Surv(time, status) ~ karno + trt + frailty(celltype, distribution = "gaussian"), data = veteran, control = tight))
out$veteran_breslow_tight <- fr(coxph(Surv(time, status) ~ karno + trt + frailty(celltype, distribution = "gaussian"), data = veteran, ties = "breslow", control = tight))
# synthetic 3-center study with a real center effect (seeded in R, written to CSV)
set.seed(7)
n <- 600; center <- sample(c("A", "B", "C"), n, replace = TRUE)
u <- c(A = -0.5, B = 0.1, C = 0.6)[center]
score <- rnorm(n); risk <- rbinom(n, 1, 0.4)
tt <- rexp(n, 0.05 * exp(0.8 * risk + 0.3 * score + u)); cc <- runif(n, 5, 60)
sim <- data.frame(time = round(pmin(tt, cc), 1), status = as.integer(tt <= cc), risk = risk,
                  score = round(score, 4), center = center)
write.csv(sim, "tests/stats/data/frailty_sim.csv", row.names = FALSE)
sim <- read.csv("tests/stats/data/frailty_sim.csv")
out$sim_default <- fr(coxph(Surv(time, status) ~ risk + score + frailty(center, distribution = "gaussian"), data = sim))
out$sim_tight <- fr(coxph(Surv(time, status) ~ risk + score + frailty(center, distribution = "gaussian"), data = sim, control = tight))
# 8 centers -> R's sparse computation with a non-zero variance
set.seed(11)
n <- 800; center <- sample(paste0("site", 1:8), n, replace = TRUE)
u <- rnorm(8, 0, 0.5); names(u) <- paste0("site", 1:8)
x <- rnorm(n); grp <- rbinom(n, 1, 0.5)
tt <- rexp(n, 0.03 * exp(0.5 * x + 0.7 * grp + u[center])); cc <- runif(n, 10, 80)
sim8 <- data.frame(time = round(pmin(tt, cc), 1), status = as.integer(tt <= cc), x = round(x, 4),
                   grp = grp, center = center)
write.csv(sim8, "tests/stats/data/frailty_sim8.csv", row.names = FALSE)
sim8 <- read.csv("tests/stats/data/frailty_sim8.csv")
out$sim8_default <- fr(coxph(Surv(time, status) ~ x + grp + frailty(center, distribution = "gaussian"), data = sim8))
out$sim8_tight <- fr(coxph(Surv(time, status) ~ x + grp + frailty(center, distribution = "gaussian"), data = sim8, control = tight))
write_json(out, "tests/stats/reference/frailty.json", digits = NA, auto_unbox = TRUE, na = "null")
cat("written\n")
