# Reference values for tests/stats/test_table1*.py and test_subgroups*.py.
# Run from the repository root:  Rscript tests/stats/r/table1_subgroups_reference.R
suppressMessages({library(survival); library(jsonlite)})
rd <- function(name) read.csv(file.path("tests/stats/data", paste0(name, ".csv")))
lung <- rd("lung"); colon <- rd("colon"); pbc <- rd("pbc")
out <- list()

# ---- Table 1: every candidate test, so Python's choice can be checked ----
cont <- function(x, g) {
  ok <- !is.na(x) & !is.na(g); x <- x[ok]; g <- factor(g[ok])
  sw <- sapply(split(x, g), function(v) if (length(v) >= 3 && length(v) <= 5000 && diff(range(v)) > 0) shapiro.test(v)$p.value else NA)
  r <- list(shapiro = unname(sw), levels = levels(g))
  if (nlevels(g) == 2) {
    r$welch <- t.test(x ~ g)$p.value
    r$wilcox <- suppressWarnings(wilcox.test(x ~ g)$p.value)
  } else {
    r$anova <- summary(aov(x ~ g))[[1]][["Pr(>F)"]][1]
    r$kruskal <- kruskal.test(x ~ g)$p.value
  }
  r
}
cat_ <- function(x, g) {
  tab <- table(x, g)
  ex <- suppressWarnings(chisq.test(tab, correct = FALSE)$expected)
  list(table = matrix(as.vector(tab), nrow(tab)), min_expected = min(ex),
       chisq = suppressWarnings(chisq.test(tab, correct = FALSE)$p.value),
       fisher = fisher.test(tab, workspace = 2e8)$p.value)
}
pbc2 <- pbc[!is.na(pbc$trt), ]
out$t1_pbc <- list(
  age = cont(pbc2$age, pbc2$trt), bili = cont(pbc2$bili, pbc2$trt),
  albumin = cont(pbc2$albumin, pbc2$trt), chol = cont(pbc2$chol, pbc2$trt),
  sex = cat_(pbc2$sex, pbc2$trt), stage = cat_(pbc2$stage, pbc2$trt),
  edema = cat_(pbc2$edema, pbc2$trt), ascites = cat_(pbc2$ascites, pbc2$trt),
  missing_chol = as.vector(unname(tapply(is.na(pbc2$chol), pbc2$trt, sum))))
col <- colon[colon$etype == 2, ]
out$t1_colon <- list(
  age = cont(col$age, col$rx), nodes = cont(col$nodes, col$rx), sex = cat_(col$sex, col$rx),
  differ = cat_(col$differ, col$rx), extent = cat_(col$extent, col$rx),
  obstruct = cat_(col$obstruct, col$rx))
out$t1_lung <- list(age = cont(lung$age, lung$sex), wt.loss = cont(lung$wt.loss, lung$sex),
                    ph.ecog = cat_(lung$ph.ecog, lung$sex), inst = cont(lung$inst, lung$sex))
# small-sample wilcox (exact branch) and Fisher r x c on explicit tables
set.seed(3); a <- round(rnorm(12, 10, 3), 2); b <- round(rexp(9, 0.1), 2)
out$wilcox_exact <- list(a = a, b = b, p = wilcox.test(a, b)$p.value)
tabs <- list(
  job = matrix(c(1, 2, 1, 0, 3, 3, 6, 1, 10, 10, 14, 9, 6, 7, 12, 11), 4, byrow = TRUE),
  small3 = matrix(c(3, 1, 0, 1, 4, 2, 0, 2, 5), 3, byrow = TRUE),
  t23 = matrix(c(2, 5, 1, 8, 3, 9), 2, byrow = TRUE),
  t25 = matrix(c(2, 3, 40, 50, 60, 1, 0, 30, 20, 25), 2, byrow = TRUE),
  t42 = matrix(c(0, 5, 3, 2, 7, 1, 4, 4), 4, byrow = TRUE),
  t22 = matrix(c(3, 1, 1, 3), 2, byrow = TRUE),
  big = matrix(c(40, 30, 2, 50, 45, 1, 60, 20, 4, 30, 35, 0), 4, byrow = TRUE),
  stage4x3 = matrix(c(150, 110, 60, 200, 150, 90, 45, 38, 20, 3, 2, 1), 4, byrow = TRUE),
  tiny_diag = diag(20, 3),
  tiny3 = matrix(c(12, 1, 0, 0, 15, 2, 1, 0, 18), 3, byrow = TRUE),
  t34 = matrix(c(5, 0, 3, 1, 0, 6, 0, 4, 2, 1, 7, 0), 3, byrow = TRUE))
out$fisher <- lapply(tabs, function(m) list(table = unname(m), p = fisher.test(m, workspace = 2e8)$p.value))

# ---- subgroups ----
sg <- function(d, expo, vars) {
  res <- list()
  for (v in vars) {
    dd <- d[!is.na(d[[v]]), ]
    dd$S <- factor(dd[[v]])
    f0 <- coxph(Surv(time, status) ~ X + S, data = dd)
    f1 <- coxph(Surv(time, status) ~ X * S, data = dd)
    lr <- 2 * (f1$loglik[2] - f0$loglik[2])
    pint <- pchisq(lr, sum(!is.na(coef(f1))) - sum(!is.na(coef(f0))), lower.tail = FALSE)
    lv <- list()
    for (l in levels(dd$S)) {
      s <- dd[dd$S == l, ]
      f <- tryCatch(coxph(Surv(time, status) ~ X, data = s), error = function(e) NULL, warning = function(w) NULL)
      if (is.null(f)) { lv[[l]] <- list(n = nrow(s), events = sum(s$status), hr = NULL); next }
      ci <- exp(confint(f))
      lv[[l]] <- list(n = nrow(s), events = sum(s$status), hr = unname(exp(coef(f))),
                      lower = ci[1], upper = ci[2], p = summary(f)$coefficients[1, 5])
    }
    res[[v]] <- list(p_interaction = pint, levels = lv)
  }
  res
}
colsg <- colon[colon$etype == 2 & colon$rx %in% c("Obs", "Lev+5FU"), ]
colsg$X <- as.integer(colsg$rx == "Lev+5FU")
out$sg_colon <- sg(colsg, "X", c("sex", "node4", "differ", "obstruct"))
o <- coxph(Surv(time, status) ~ X, data = colsg)
out$sg_colon_overall <- list(hr = unname(exp(coef(o))), p = summary(o)$coefficients[1, 5])
lsg <- lung; lsg$status <- lsg$status - 1; lsg$X <- lsg$wt.loss; lsg <- lsg[!is.na(lsg$X), ]
lsg$age65 <- ifelse(lsg$age >= 65, "65+", "<65")
out$sg_lung <- sg(lsg, "X", c("sex", "age65", "ph.ecog"))
write.csv(lsg[, c("time", "status", "X", "sex", "age65", "ph.ecog")], "tests/stats/data/lung_subgroups.csv", row.names = FALSE, na = "")
write_json(out, "tests/stats/reference/table1_subgroups.json", digits = NA, auto_unbox = TRUE, na = "null")
cat("written\n")
